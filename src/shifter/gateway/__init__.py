"""The image gateway: pulls images from registries, converts them, and serves their records.

`config` holds the validated imagemanager.json (`load_gateway_config`, `GatewayConfig`).
"""
