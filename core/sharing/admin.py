"""What an admin does to a token name: reset its passphrase (a student forgot it) or remove it (a look-alike that
squats a classmate's name, markup or a path kept from before the name rule). The Class page and `python -m core
people` both call these.

Each ends the name's sessions (a reset one may be in the wrong hands; a removed one is nobody's) and forgets its
sign-in counts and the browsers remembered for it (whoever signs in next starts clean), writes the change to the
shared store's `people_events` (`core.sharing.people.events`) and to the server log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.sharing import attempts, people, sessions

log = logging.getLogger("flora")


@dataclass(frozen=True)
class Done:
    """What a reset or a removal did: the name as registered, the sessions it ended."""

    name: str
    sessions_ended: int

    def words(self, action: str) -> str:
        ended = f"; {self.sessions_ended} session(s) ended" if self.sessions_ended else ""
        if action == people.RESET:
            return f"Reset the passphrase of “{self.name}”: the next sign-in with that name sets a new one{ended}."
        return (
            f"Removed “{self.name}”: the name is free again (the next to sign in with it, or a name that reads the "
            f"same, takes it){ended}. Runs recorded under it stay, under that spelling."
        )


def reset_passphrase(data_root, name: str, by: str) -> Done:
    """Reset the passphrase of the token name `name` reads as (NotFound when nobody holds it)."""
    registered = people.reset_passphrase(data_root, name, by)
    return _after(data_root, registered, by, people.RESET, remove=False)


def remove_name(data_root, name: str, by: str) -> Done:
    """Remove the token name `name` reads as (NotFound when nobody holds it)."""
    registered = people.remove_name(data_root, name, by)
    return _after(data_root, registered, by, people.REMOVED, remove=True)


def _after(data_root, name: str, by: str, action: str, remove: bool) -> Done:
    ended = sessions.close_sessions_of(data_root, name)
    attempts.forget_name(data_root, name)
    if remove:
        sessions.forget_presence(data_root, name)
    log.info("people: %s %s (by %s; %d session(s) ended)", action, ascii(name), by, ended)
    return Done(name, ended)
