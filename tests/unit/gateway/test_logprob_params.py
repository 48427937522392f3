"""The gateway's logprobs / top_logprobs rules, as OpenAI's: 0 … 20 alternatives, top_logprobs only with logprobs."""

from __future__ import annotations

import pytest

from services.gateway.errors import GatewayError
from services.gateway.params import logprobs


@pytest.mark.parametrize(
    ("flag", "top", "expected"), [(None, None, None), (False, None, None), (True, None, 0), (True, 5, 5), (True, 0, 0)]
)
def test_gateway_logprob_parameters(flag, top, expected) -> None:
    assert logprobs(flag, top) == expected


@pytest.mark.parametrize(("flag", "top"), [(None, 3), (False, 1), (True, 21), (True, -1)])
def test_gateway_refuses_what_openai_refuses(flag, top) -> None:
    with pytest.raises(GatewayError) as caught:
        logprobs(flag, top)
    assert caught.value.status == 400 and caught.value.message.startswith("top_logprobs:")
