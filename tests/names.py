"""Hostile names, shared by the tests that prove no name can widen a cleanup."""

from __future__ import annotations

# Refused for kind, target and actor alike.
HOSTILE_NAMES = {
    "empty": "",
    "wildcard": "*",
    "percent": "%",
    "trailing-percent": "a%",
    "dot-dot": "..",
    "inner-dot-dot": "a..b",
    "leading-dot": ".hidden",
    "space": "a b",
    "trailing-space": "codescaler ",
    "trailing-newline": "alice\n",
    "too-long": "x" * 65,
    "cyrillic-a-look-alike": "\u0430lice",
    "fullwidth-look-alike": "\uff41lice",
    "slash": "a/b",
    "leading-hyphen": "-a",
    "sql": "'; --",
}
# Valid kinds or targets, refused as actors: their actor tag would be another family's.
ACTOR_ONLY = {
    "kind-prefix": "kind_user",
    "target-prefix": "target_web",
    "reserved-kind": "kind",
    "reserved-target": "target",
    "reserved-keep": "keep",
}
