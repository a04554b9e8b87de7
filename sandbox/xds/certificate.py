"""A workload's certificate as the CA issues it and the push protocol delivers it (the SDS secret).

The private key lives in memory only: it is never written and never logged (`repr` leaves it
out), and travels only over the authenticated push connection.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WorkloadCertificate:
    spiffe_id: str
    cert_chain: str  # PEM
    private_key: str = field(repr=False)  # PEM (PKCS#8)
    root_cert: str  # PEM: the mesh root every peer is checked against
    serial: int
    not_before: dt.datetime  # backdated by the CA's clock-skew allowance
    not_after: dt.datetime
    issued_at: dt.datetime  # the start of the lifetime rotation counts from (not the backdated not_before)

    @property
    def serial_hex(self) -> str:
        return f"{self.serial:x}"

    def to_data(self) -> dict[str, Any]:
        return {
            "spiffe_id": self.spiffe_id,
            "cert_chain": self.cert_chain,
            "private_key": self.private_key,
            "root_cert": self.root_cert,
            "serial": self.serial_hex,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "issued_at": self.issued_at.isoformat(),
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> WorkloadCertificate:
        """Raises ValueError naming the field that is missing or malformed (never its value)."""
        text: dict[str, str] = {}
        for name in ("spiffe_id", "cert_chain", "private_key", "root_cert", "serial", "not_before", "not_after"):
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"certificate: `{name}` is missing or not a string")
            text[name] = value
        try:
            serial = int(text["serial"], 16)
            not_before = dt.datetime.fromisoformat(text["not_before"])
            not_after = dt.datetime.fromisoformat(text["not_after"])
            issued = data.get("issued_at")
            issued_at = dt.datetime.fromisoformat(issued) if isinstance(issued, str) else not_before
        except ValueError:
            raise ValueError("certificate: serial or validity is malformed") from None
        return cls(
            text["spiffe_id"],
            text["cert_chain"],
            text["private_key"],
            text["root_cert"],
            serial,
            not_before,
            not_after,
            issued_at,
        )
