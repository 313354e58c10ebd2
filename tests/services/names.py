"""Names for things tests create in shared services (stdlib only: conftest imports it)."""

from __future__ import annotations

import re
import uuid


def fresh_repo_name(label: str, prefix: str = "test") -> str:
    """A repository name no other test uses: `PREFIX/LABEL-XXXXXXXX`, valid for a registry.

    Labels are test names (brackets, upper case): reduced to the registry's grammar
    (lower-case alphanumerics separated by single '-'). The random suffix keeps reruns
    against a long-lived session registry apart too.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40].strip("-") or "repo"
    return f"{prefix}/{slug}-{uuid.uuid4().hex[:8]}"
