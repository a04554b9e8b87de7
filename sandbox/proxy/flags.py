"""Envoy's %RESPONSE_FLAGS%: combined in Envoy's own order, so lines read like Envoy's ("UF,URX")."""

from __future__ import annotations

# Envoy prints response flags in this order (ResponseFlagUtils); "UF,URX" is a familiar sight.
FLAG_ORDER = (
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC", "URX", "SI", "IH",
    "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM",
)  # fmt: skip


def join_flags(flags: str, flag: str) -> str:
    if not flags or flags == "-":
        return flag
    parts = set(flags.split(","))
    parts.add(flag)
    return ",".join(sorted(parts, key=lambda f: FLAG_ORDER.index(f) if f in FLAG_ORDER else len(FLAG_ORDER)))
