"""A closed browser leaves no traceback in the server's log (walk of issue 38, item 19)."""

from __future__ import annotations

import logging

from starlette.websockets import WebSocketDisconnected

from pages.ui import server_log


def _raised(error: BaseException) -> tuple:
    try:
        raise error
    except BaseException as e:
        return (type(e), e, e.__traceback__)


def test_a_closed_browser_is_dropped_and_a_real_error_is_kept(caplog):
    server_log.quiet_closed_browsers()
    server_log.quiet_closed_browsers()  # twice: one filter
    logger = logging.getLogger(server_log.SERVER_LOGGER)
    assert sum(isinstance(f, server_log._ClosedBrowsers) for f in logger.filters) == 1
    with caplog.at_level(logging.ERROR, logger=server_log.SERVER_LOGGER):
        closed = _raised(WebSocketDisconnected('Cannot call "send" once a close message has been sent.'))
        logger.error("Exception in ASGI application\n", exc_info=closed)
        logger.error("Exception in ASGI application\n", exc_info=_raised(RuntimeError("a real bug")))
    assert [r.exc_info[1].args[0] for r in caplog.records] == ["a real bug"]
