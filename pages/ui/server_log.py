"""The app server's log, where an instructor looks up an error id: a browser closing is not an error.

Each closed tab left "Exception in ASGI application ... WebSocketDisconnected" with its traceback in the log
(uvicorn logs whatever the app's websocket handler raises, and Streamlit's handler raises Starlette's
WebSocketDisconnected when it writes to a socket the browser has closed): six students closing their tabs buried
the error ids. `quiet_closed_browsers()` drops those records, and only those, from uvicorn's error log.
"""

from __future__ import annotations

import logging

SERVER_LOGGER = "uvicorn.error"  # where uvicorn's websocket protocols log what the app raised


def closed_browser(record: logging.LogRecord) -> bool:
    """The record is a websocket's "Exception in ASGI application" raised because its browser went away."""
    if not record.exc_info or record.exc_info[1] is None:
        return False
    from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

    return isinstance(record.exc_info[1], (WebSocketDisconnect, WebSocketDisconnected))


class _ClosedBrowsers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not closed_browser(record)


def quiet_closed_browsers() -> None:
    """Install the filter on the server's error log (once per process)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, _ClosedBrowsers) for f in logger.filters):
        logger.addFilter(_ClosedBrowsers())
