"""The one registry of tasks: name, domain, classes with their English and Chinese display
names, dynasty table, default training config and target figure.

Everything that lists tasks, titles a task, names a class for a curator or looks up a
dynasty reads it here. Class *keys* (``flower_bird``, ``kaishu_regular`` …) are the
stable identifiers written to the corrections CSV and used as data folder names; display
names are for people. A model card may carry its own ``display_names`` (classes the
registry does not know, e.g. a test model's); :func:`class_name` prefers the registry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

DOMAINS: tuple[str, ...] = ("painting", "calligraphy")


@dataclass(frozen=True)
class ClassName:
    """A class's display names: English, Simplified Chinese and pinyin (may be empty)."""

    en: str
    zh: str
    pinyin: str = ""

    def text(self, lang: str = "en") -> str:
        """``"山水 landscape"`` style label: Chinese first for ``zh``, English first otherwise."""
        return f"{self.zh} {self.en}" if lang == "zh" else f"{self.en} {self.zh}"

    def to_dict(self) -> dict[str, str]:
        return {"en": self.en, "zh": self.zh, "pinyin": self.pinyin}


@dataclass(frozen=True)
class Target:
    """The figure a shipped model must reach on held-out works: ``metric`` ≥ ``value``."""

    metric: str
    value: float


@dataclass(frozen=True)
class Task:
    """One classification task of the app.

    ``classes`` maps class key -> display names, in the card's (sorted) order;
    ``dynasty`` maps class key -> dynasty key (a key of :data:`DYNASTIES`);
    ``config`` is the name of its packaged training config (``inkapp/training/configs``).
    """

    name: str
    domain: str
    title: ClassName
    classes: dict[str, ClassName]
    target: Target | None = None
    dynasty: dict[str, str] = field(default_factory=dict)
    shown: bool = True  # False for the routing model (domain), which has no result panel

    @property
    def config(self) -> str:
        return self.name


DYNASTIES: dict[str, ClassName] = {
    "Tang": ClassName("Tang", "唐", "Táng"),
    "Yuan": ClassName("Yuan", "元", "Yuán"),
}

_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add ``task`` to the registry (a second task of the same name is an error)."""
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    if task.domain not in DOMAINS and task.shown:
        raise ValueError(f"task {task.name!r}: unknown domain {task.domain!r}")
    _TASKS[task.name] = task
    return task


register(Task("painting-subject", "painting", ClassName("Painting subject", "画科"), {
    "figure": ClassName("figure", "人物", "rénwù"),
    "flower_bird": ClassName("flower-and-bird", "花鸟", "huāniǎo"),
    "landscape": ClassName("landscape", "山水", "shānshuǐ"),
}, Target("accuracy", 0.95)))
register(Task("painting-technique", "painting", ClassName("Painting technique", "技法"), {
    "gongbi": ClassName("gongbi (fine-line)", "工笔", "gōngbǐ"),
    "xieyi": ClassName("xieyi (freehand)", "写意", "xiěyì"),
}, Target("macro_f1", 0.90)))
register(Task("calligraphy-script", "calligraphy", ClassName("Calligraphy script", "书体"), {
    "kaishu_regular": ClassName("regular script", "楷书", "kǎishū"),
    "lishu_clerical": ClassName("clerical script", "隶书", "lìshū"),
    "zhuanshu_seal": ClassName("seal script", "篆书", "zhuànshū"),
}, Target("accuracy", 0.98)))
register(Task("calligrapher", "calligraphy", ClassName("Calligrapher", "书家"), {
    "liu_gongquan": ClassName("Liu Gongquan", "柳公权", "Liǔ Gōngquán"),
    "ouyang_xun": ClassName("Ouyang Xun", "欧阳询", "Ōuyáng Xún"),
    "yan_zhenqing": ClassName("Yan Zhenqing", "颜真卿", "Yán Zhēnqīng"),
    "zhao_mengfu": ClassName("Zhao Mengfu", "赵孟頫", "Zhào Mèngfǔ"),
}, Target("accuracy", 0.97),
    dynasty={"ouyang_xun": "Tang", "yan_zhenqing": "Tang", "liu_gongquan": "Tang", "zhao_mengfu": "Yuan"}))
register(Task("domain", "routing", ClassName("Domain", "类别"), {
    "calligraphy": ClassName("calligraphy", "书法", "shūfǎ"),
    "painting": ClassName("painting", "绘画", "huìhuà"),
}, shown=False))

#: The result panels of the app, by domain, in display order.
TASKS_BY_DOMAIN: dict[str, list[str]] = {d: [t.name for t in _TASKS.values() if t.shown and t.domain == d]
                                         for d in DOMAINS}
#: Every task with a result panel (the routing model excluded).
TASKS: list[str] = [name for names in TASKS_BY_DOMAIN.values() for name in names]
#: The painting-vs-calligraphy routing model's task name.
DOMAIN_TASK = "domain"


def get(name: str) -> Task:
    """The registered task ``name`` (ValueError naming the known tasks otherwise)."""
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(_TASKS)}") from None


def all_tasks() -> list[Task]:
    """Every registered task, routing model included, in registration order."""
    return list(_TASKS.values())


def class_name(task: str, key: str, card: dict | None = None) -> ClassName:
    """Display names of class ``key`` of ``task``: the registry's, else the card's
    ``display_names`` entry, else the key itself with underscores as spaces."""
    known = _TASKS.get(task)
    if known is not None and key in known.classes:
        return known.classes[key]
    entry = ((card or {}).get("display_names") or {}).get(key)
    if isinstance(entry, dict) and entry.get("en"):
        return ClassName(str(entry["en"]), str(entry.get("zh") or entry["en"]), str(entry.get("pinyin") or ""))
    plain = key.replace("_", " ")
    return ClassName(plain, plain)


def dynasty_name(key: str) -> ClassName:
    """Display names of a dynasty key (``Tang`` -> 唐)."""
    return DYNASTIES.get(key, ClassName(key, key))


def config_path(name: str) -> Path:
    """The packaged training config ``name`` (a task name or e.g. ``ablation-paper-a``), or
    ``name`` itself when it is a path to an existing YAML file."""
    given = Path(name)
    if given.suffix in (".yaml", ".yml") and given.is_file():
        return given
    packaged = resources.files("inkapp.training") / "configs" / f"{given.stem}.yaml"
    path = Path(str(packaged))
    if not path.is_file():
        raise ValueError(f"no training config {name!r} (looked for {given} and {path})")
    return path
