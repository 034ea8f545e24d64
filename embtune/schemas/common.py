"""Field patterns every request model shares."""

from __future__ import annotations

# PostgreSQL text cannot hold NUL: such text is refused here (422 naming the field), so both
# databases answer alike and no insert or lookup fails inside the database with a 500.
NO_NUL = r"^[^\x00]*$"
