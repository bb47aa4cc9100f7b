"""The app's words in English and Simplified Chinese.

:data:`TEXT` holds every fixed string of the page by key and language. The page is
built with :data:`I18N` keys (``gr.I18n``: the browser's language decides the first
render); the language switch on the page (:func:`Relabel`) re-labels the same
components from the same table, and everything the server writes (results, messages,
tables) is written in the chosen language with :func:`t`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

LANGS: tuple[str, ...] = ("en", "zh")
LANG_CHOICES = [("English", "en"), ("中文", "zh")]
#: BrowserState key under which a visitor's language choice is kept.
LANG_STORAGE_KEY = "inkapp-language"
#: Runs in the browser on page load: the stored choice, else the browser's language.
DETECT_LANG_JS = ("(stored) => (stored === 'en' || stored === 'zh') ? stored : "
                  "((navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en')")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "# Ink curation studio",
        "intro": "Classify Chinese ink paintings and calligraphy rubbings, see where the models look, and correct "
                 "their labels.",
        "language": "Language / 语言",
        "tab_analyse": "Analyse", "tab_review": "Review", "tab_models": "Models",
        "sign_in_title": "#### Expert sign-in (once for this browser session)",
        "expert_name": "Expert name", "password": "Password", "sign_in": "Sign in", "sign_out": "Sign out",
        "upload": "Images (JPEG, PNG, TIFF, WebP, GIF, BMP) or a .zip",
        "domain": "Domain", "cam_method": "Heat map method", "opacity": "Heat map opacity",
        "gallery": "Uploaded images — click one to analyse it",
        "correct_title": "#### Correct a label",
        "task": "Task", "right_label": "Right label", "note": "Note (optional)",
        "submit": "Save correction", "undo": "Undo my last correction", "next": "Next in the review queue",
        "status_empty": "Upload an image to analyse it.",
        "chart": "Class probabilities", "compare": "Original ◀ ▶ heat map (drag to compare)",
        "explain": "Explain class", "researchers": "For researchers: the model's own attention",
        "attention": "Model attention maps", "channels": "Channel attention",
        "corrections_title": "### Corrections", "expert_contains": "Expert contains",
        "label_contains": "Label contains",
        "show_revoked": "Only corrections in effect (untick to see undone and replaced ones)",
        "refresh": "Refresh", "download": "Download CSV", "all_columns": "All columns (as in the CSV)",
        "queue_title": "### Review queue — least confident first (click one to open it in Analyse)",
        "queue": "Not reviewed yet",
        "card_title": "Model card", "per_class": "Per-class test results", "confusion": "Confusion matrix (test)",
        "provenance": "Data provenance",
        "versions_title": "### Versions", "version": "Version to serve", "rollback": "Serve this version",
        "retrain_title": "### Retrain from corrections", "preview": "Check what the corrections change",
        "retrain": "Retrain from corrections", "log": "Training log (tail)", "candidate": "Candidate",
        "compare_current": "Compare with the current model", "promote": "Promote", "discard": "Discard",
        "same_split": "Same test split",
        "similar": "Similar works in the collection", "iiif_url": "…or open an IIIF image or manifest URL",
        "iiif_open": "Open URL", "export_record": "Export record (HTML, PDF)",
        "export_annotations": "Export annotations (W3C JSON)", "exports": "Downloads",
        "page_title": "#### Page attribution — the characters vote",
        "page_boxes": "Characters found (numbered in reading order, coloured by each one's leading master)",
        "page_evidence": "Strongest evidence: character | heat map for the page's master",
        "page_votes": "The page's vote",
        "duplicates_title": "### Near-duplicates (pairs whose labels disagree first)",
        "find_duplicates": "Find near-duplicates",
        "suspects_title": "### Suspect labels — the data's likely mislabelled images (click one, then decide)",
        "suspects": "Suspects, most suspect first", "suspect_confirm": "Confirm: use the model's view",
        "suspect_keep": "Keep the given label",
    },
    "zh": {
        "title": "# 水墨鉴藏工作室",
        "intro": "为中国水墨画与书法拓片分类，查看模型关注的位置，并更正其标签。",
        "language": "Language / 语言",
        "tab_analyse": "分析", "tab_review": "复核", "tab_models": "模型",
        "sign_in_title": "#### 专家登录（本次浏览只需一次）",
        "expert_name": "专家姓名", "password": "密码", "sign_in": "登录", "sign_out": "退出登录",
        "upload": "图像（JPEG、PNG、TIFF、WebP、GIF、BMP）或 .zip 压缩包",
        "domain": "类别", "cam_method": "热力图方法", "opacity": "热力图不透明度",
        "gallery": "已上传的图像——点击一张进行分析",
        "correct_title": "#### 更正标签",
        "task": "任务", "right_label": "正确标签", "note": "备注（可选）",
        "submit": "保存更正", "undo": "撤销我的上一条更正", "next": "复核队列中的下一张",
        "status_empty": "上传图像以进行分析。",
        "chart": "各类别概率", "compare": "原图 ◀ ▶ 热力图（拖动对比）",
        "explain": "解释的类别", "researchers": "供研究人员参考：模型自身的注意力",
        "attention": "模型注意力图", "channels": "通道注意力",
        "corrections_title": "### 更正记录", "expert_contains": "专家姓名包含",
        "label_contains": "标签包含", "show_revoked": "只显示生效的更正（取消勾选可查看已撤销和已被取代的）",
        "refresh": "刷新", "download": "下载 CSV", "all_columns": "全部列（与 CSV 相同）",
        "queue_title": "### 复核队列——置信度最低的在前（点击即在“分析”中打开）",
        "queue": "尚未复核",
        "card_title": "模型卡", "per_class": "各类别测试结果", "confusion": "混淆矩阵（测试集）",
        "provenance": "数据来源",
        "versions_title": "### 版本", "version": "要使用的版本", "rollback": "使用此版本",
        "retrain_title": "### 根据更正重新训练", "preview": "查看更正会改变什么",
        "retrain": "根据更正重新训练", "log": "训练日志（末尾）", "candidate": "候选模型",
        "compare_current": "与当前模型比较", "promote": "启用", "discard": "丢弃",
        "same_split": "同一测试集",
        "similar": "馆藏中的相似作品", "iiif_url": "……或打开 IIIF 图像或清单（manifest）网址",
        "iiif_open": "打开网址", "export_record": "导出档案（HTML、PDF）",
        "export_annotations": "导出标注（W3C JSON）", "exports": "下载",
        "page_title": "#### 整页归属——由各字投票",
        "page_boxes": "找到的字（按阅读顺序编号，颜色为各字最可能的书家）",
        "page_evidence": "最有力的证据：单字 | 对本页书家的热力图",
        "page_votes": "整页投票",
        "duplicates_title": "### 近似重复（标签不一致的在前）",
        "find_duplicates": "查找近似重复",
        "suspects_title": "### 可疑标签——数据中可能标错的图像（点击一张，再作决定）",
        "suspects": "可疑标签，最可疑的在前", "suspect_confirm": "确认：采用模型的判断",
        "suspect_keep": "保留原标签",
    },
}

#: gradio's i18n table: ``zh-CN`` / ``zh-TW`` browsers get the Simplified Chinese text too.
I18N = gr.I18n(en=TEXT["en"], zh=TEXT["zh"], **{"zh-CN": TEXT["zh"]})


def lang_of(value: str | None) -> str:
    """``"zh"`` for a Chinese language tag (``zh``, ``zh-CN`` …), else ``"en"``."""
    return "zh" if str(value or "").lower().startswith("zh") else "en"


def t(lang: str | None, key: str) -> str:
    """The fixed string ``key`` in ``lang`` (English for an unknown language)."""
    return TEXT[lang_of(lang)][key]


def pick(pair: Sequence[str], lang: str | None) -> str:
    """One side of an (English, Chinese) pair."""
    return pair[1] if lang_of(lang) == "zh" else pair[0]


@dataclass
class Relabel:
    """Components whose fixed text follows the language switch: ``(component, key, attr)``
    where ``attr`` is ``"label"`` (a field's label) or ``"value"`` (a Markdown text or a
    button's caption)."""

    entries: list[tuple[gr.components.Component | gr.Tab, str, str]] = field(default_factory=list)

    def label(self, component: Any, key: str) -> Any:
        """Register ``component`` (built with ``label=I18N(key)``) and return it."""
        self.entries.append((component, key, "label"))
        return component

    def value(self, component: Any, key: str) -> Any:
        """Register ``component`` (built with ``value=I18N(key)``) and return it."""
        self.entries.append((component, key, "value"))
        return component

    @property
    def components(self) -> list[Any]:
        return [c for c, _, _ in self.entries]

    def updates(self, lang: str) -> list[Any]:
        """One ``gr.update`` per registered component, in registration order."""
        return [gr.update(**{attr: t(lang, key)}) for _, key, attr in self.entries]
