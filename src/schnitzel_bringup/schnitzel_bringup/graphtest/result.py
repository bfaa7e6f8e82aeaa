from __future__ import annotations

import dataclasses
from typing import List


@dataclasses.dataclass
class Result:
    file: str
    name: str
    status: str                      # pass | fail | error | skip
    details: List[str] = dataclasses.field(default_factory=list)   # the diff / why
    notes: List[str] = dataclasses.field(default_factory=list)     # what happened (faults fired, counts)
    seconds: float = 0.0
    outputs: dict = dataclasses.field(default_factory=dict)        # at -> [Packet] (cases)
