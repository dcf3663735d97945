"""HTTP only: each router validates, calls one runtime function, and maps errors. One router per file."""
