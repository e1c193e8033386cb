"""Optional access control: one shared token (or password) for non-local use.

Set ``DRIFTLINE_DASHBOARD_TOKEN`` or ``DRIFTLINE_DASHBOARD_TOKEN_FILE`` (a file holding it, so the
secret stays out of process listings). Without either the dashboard is open, which is right for
``driftline up`` on a laptop (it binds 127.0.0.1). With one, a visitor types it once per browser
session, or opens a link carrying ``?token=…`` (the token is then removed from the address bar).
Comparison is constant-time. Put TLS in front (a reverse proxy) when the token crosses a network.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Mapping

from driftline.sdk.errors import ConfigError


def load_token(env: Mapping[str, str] | None = None) -> str | None:
    """The configured token, ``None`` when access is open. A named but unreadable or empty file
    is a configuration error (failing open would expose the dashboard)."""
    e = os.environ if env is None else env
    token = e.get("DRIFTLINE_DASHBOARD_TOKEN", "")
    path = e.get("DRIFTLINE_DASHBOARD_TOKEN_FILE", "")
    if path:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"DRIFTLINE_DASHBOARD_TOKEN_FILE={path}: cannot read it ({exc})") from None
        if not token:
            raise ConfigError(f"DRIFTLINE_DASHBOARD_TOKEN_FILE={path} is empty")
    return token or None


def check(expected: str, given: str | None) -> bool:
    """Constant-time comparison of ``given`` with ``expected``."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def gate(expected: str | None) -> bool:
    """Render a sign-in form when needed; ``True`` when the visitor may see the dashboard."""
    import streamlit as st

    if expected is None or st.session_state.get("driftline_authenticated"):
        return True
    from_link = st.query_params.get("token")
    if from_link is not None:
        del st.query_params["token"]
        if check(expected, from_link):
            st.session_state["driftline_authenticated"] = True
            return True
    st.title("driftline")
    with st.form("signin"):
        given = st.text_input("Access token", type="password",
                              help="Set by DRIFTLINE_DASHBOARD_TOKEN on the dashboard's host.")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        if check(expected, given):
            st.session_state["driftline_authenticated"] = True
            st.rerun()
        st.error("That token is not right.")
    return False


__all__ = ["check", "gate", "load_token"]
