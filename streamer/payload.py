"""The envelope of a Cohort Sync request: everything but its members, as bytes.

The envelope is serialized once with an empty member list; a seal splices the members in
between its head and tail, so each body's exact size is known while packing. The members are
written in Rust (streamer/fastpath/src/body.rs), escaped exactly as orjson escapes them.
"""

from __future__ import annotations

import orjson


class Envelope:
    """The fixed part of a cohort's request for one action: everything but the members."""

    def __init__(
        self,
        action: str,
        partner: str,
        cohort_id: str,
        cohort_name: str,
        description: str | None,
    ) -> None:
        parameters: dict[str, object] = {"cohort_name": cohort_name, "cohort_id": cohort_id}
        if description:
            parameters["cohort_description"] = description
        parameters["members"] = []  # last key, so the body ends with  []}}
        whole = orjson.dumps({"action": action, "partner": partner, "parameters": parameters})
        self.head = whole[:-3]  # ... "members":[
        self.tail = whole[-3:]  # ]}}
        self.action = action
