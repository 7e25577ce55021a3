"""Text from the cloud is data: every result an action returns through dvremedy.runner.run_step
(the only way the pack's steps reach st2) carries no Jinja marker, since the workflow hands
results to the next actions as parameters and st2 renders any parameter holding one. Checked
with st2 3.9's own render_live_params: a result rendered as a live parameter comes back
unchanged."""
import pytest

from dvremedy.errors import RemedyError
from dvremedy.runner import inert, run_step

HOSTILE = ["{{ st2kv.system.secret | decrypt_kv }}", "{% for x in range(9) %}x{% endfor %}",
           "{# hidden #}", "{{{ 7*7 }}}", "{{{{", "{%{#{{", "a{b}c {x} {", "ok"]


@pytest.mark.parametrize("text", HOSTILE)
def test_inert_leaves_no_marker_and_keeps_the_rest(text):
    out = inert(text)
    assert not any(m in out for m in ("{{", "{%", "{#"))
    assert out.replace(" ", "") == text.replace(" ", "")


def _step_with_cloud_text(ctx, text):
    return {"did": "volume named %s" % text, "views": {text: [text, {"name": text}]}}


def _failing_step(ctx, text):
    raise RemedyError("Cinder said: %s" % text, step="identify", stderr_tail=text)


@pytest.mark.parametrize("text", HOSTILE)
def test_results_and_errors_of_steps_render_to_themselves_in_st2(text):
    param = pytest.importorskip("st2common.util.param")  # st2 3.9.0 (tools/make-venvs)
    from st2common import config as st2_config
    st2_config.register_opts(ignore_errors=True)  # render_live_params reads cfg.CONF
    for step in (_step_with_cloud_text, _failing_step):
        ok, result = run_step({}, step, text=text)
        assert "{{" not in repr(result) and "{%" not in repr(result) and "{#" not in repr(result)
        rendered = param.render_live_params({}, {"result": {"type": "object"}}, {"result": result},
                                            {})
        assert rendered["result"] == result
