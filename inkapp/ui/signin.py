"""Expert sign-in, once per browser session, at the top of the page.

The name and password fields are the only credential fields of the app: every write
(correct, undo, retrain, promote, roll back, discard) takes them as its inputs, and the
server checks them on every write (:meth:`inkapp.curation.actions.CurationActions.authorise`).
Signing in checks them once up front and folds the fields away behind "Signed in as …".
A Hugging Face sign-in (on a Space) is passed to the handlers by gradio as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from inkapp.auth import AccessDenied
from inkapp.curation.actions import Credentials, CurationActions

from .i18n import I18N, Relabel, lang_of

_SIGNED_IN = ("Signed in as **{name}** — every form uses this name.", "已登录：**{name}**——所有表单都使用此身份。")
_REFUSED = ("Not signed in: {why}", "未登录：{why}")


@dataclass
class SignIn:
    """The sign-in row's components; :attr:`expert` and :attr:`password` are the
    credential inputs of every write."""

    expert: gr.Textbox
    password: gr.Textbox
    fields: gr.Row
    button: gr.Button
    sign_out: gr.Button
    status: gr.Markdown

    @property
    def credentials(self) -> list[gr.Textbox]:
        return [self.expert, self.password]


def build_signin(actions: CurationActions, relabel: Relabel, lang: gr.Radio) -> SignIn:
    """Lay out the sign-in row (inside the current block) and wire it; ``lang`` is the
    page's language switch (messages follow it)."""
    with gr.Group(elem_id="ink-signin"):
        relabel.value(gr.Markdown(I18N("sign_in_title")), "sign_in_title")
        with gr.Row() as fields:
            expert = relabel.label(gr.Textbox(label=I18N("expert_name"), elem_id="ink-expert", scale=2), "expert_name")
            password = relabel.label(gr.Textbox(label=I18N("password"), type="password", elem_id="ink-password",
                                                visible=bool(actions.experts.passwords), scale=2), "password")
            button = relabel.value(gr.Button(I18N("sign_in"), variant="primary", elem_id="ink-sign-in", scale=1),
                                   "sign_in")
        with gr.Row():
            status = gr.Markdown(elem_id="ink-signed-in")
            sign_out = relabel.value(gr.Button(I18N("sign_out"), visible=False, elem_id="ink-sign-out", size="sm"),
                                     "sign_out")
    parts = SignIn(expert, password, fields, button, sign_out, status)

    def sign_in(name: str, secret: str, lang: str, profile: gr.OAuthProfile | None) -> list[Any]:
        zh = lang_of(lang) == "zh"
        try:
            who = actions.authorise(Credentials.from_form(name, secret, profile))
        except AccessDenied as err:
            gr.Warning(_REFUSED[zh].format(why=err))
            return [_REFUSED[zh].format(why=err), gr.Row(visible=True), gr.Button(visible=False)]
        text = _SIGNED_IN[zh].format(name=who)
        gr.Success(text.replace("**", ""))
        return [text, gr.Row(visible=False), gr.Button(visible=True)]

    def sign_out_() -> list[Any]:
        return ["", gr.Row(visible=True), gr.Button(visible=False), "", ""]

    for trigger in (button.click, password.submit, expert.submit):
        trigger(sign_in, [expert, password, lang], [status, fields, sign_out], api_name=False)
    sign_out.click(sign_out_, None, [status, fields, sign_out, expert, password], api_name=False)
    return parts
