"""udiRoot.conf: finding and checking the file, parsing it, the key table, the typed model and
the value converters.
"""
