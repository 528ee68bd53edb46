"""Masking secrets in anything mortar prints or keeps: diffs, job logs, failure messages."""

from __future__ import annotations

import re
import urllib.parse

MASK = "********"
URL_CREDENTIALS = re.compile(r"(://[^:/\s@]+:)[^@\s]+(@)")
SECRET_SETTING = re.compile(r"^([-+ ]?\s*[\w.-]*(?:password|secret|passwd)[\w.-]*\s*[=:]\s*)\S.*$",
                            re.IGNORECASE | re.MULTILINE)


def redact(text: str, secrets: list[str]) -> str:
    """Mask known secrets (as written and URL-encoded), credentials inside URLs, and the
    value of any *password*/*secret* setting: an old value in a running file is masked too."""
    for secret in sorted(secrets, key=len, reverse=True):
        if not secret:
            continue
        for form in {secret, urllib.parse.quote(secret), urllib.parse.quote(secret, safe="")}:
            text = text.replace(form, MASK)
    text = URL_CREDENTIALS.sub(r"\1" + MASK + r"\2", text)
    return SECRET_SETTING.sub(r"\1" + MASK, text)
