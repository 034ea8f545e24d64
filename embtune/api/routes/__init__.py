"""One router per resource, assembled in `embtune.api.app`."""
