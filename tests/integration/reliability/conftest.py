"""Reliability suites reuse the gateway suite's running gateway and the feedback suite's fresh databases."""

from tests.integration.feedback.conftest import fb_db, fb_settings  # noqa: F401
from tests.integration.gateway.conftest import gateway, triton_client  # noqa: F401
