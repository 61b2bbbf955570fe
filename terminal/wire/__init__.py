"""The contract shared with the back office and the simulator (docs/sync.md), implemented
once: canonical JSON and the strict reader (:mod:`.canonical`), signed documents
(:mod:`.document`), journal entries (:mod:`.journal`), terminal events (:mod:`.events`),
request signing and bodies (:mod:`.requests`), and the personal-data deny-list both entries
and events obey (:mod:`.personal`). Pure: bytes in, values or typed errors out."""
