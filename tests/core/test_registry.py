"""One Registry for every kind: registration, lookup, the unknown-name message, lazy modules."""

from __future__ import annotations

import sys
import types

import pytest

from core.registry import Registry, UnknownNameError, unknown_name_message


def test_register_get_meta_and_decorator():
    reg: Registry = Registry("widget")

    @reg.register("round", size=3)
    def round_widget() -> str:
        return "o"

    reg.register("square", lambda: "[]")
    assert reg.get("round") is round_widget and reg.meta("round") == {"size": 3}
    assert reg.names() == ["round", "square"] and list(reg) == ["round", "square"] and len(reg) == 2
    assert "round" in reg and "hexagon" not in reg
    assert reg.build("square") == "[]"
    reg.register("round", round_widget)  # the same object again is fine
    with pytest.raises(ValueError, match="widget 'round' is already registered"):
        reg.register("round", lambda: "0")


def test_unknown_name_is_a_key_and_value_error_with_closest_and_valid():
    reg: Registry = Registry("loss")
    for name in ("dice", "ce", "focal"):
        reg.register(name, object())
    with pytest.raises(UnknownNameError) as info:
        reg.get("dcie")
    assert str(info.value) == "unknown loss 'dcie': did you mean 'dice'? Valid: ce, dice, focal"
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert unknown_name_message("loss", "zzz", ["ce"]) == "unknown loss 'zzz' Valid: ce"


def test_modules_are_imported_on_first_lookup(monkeypatch):
    reg: Registry = Registry("plugin", modules=["_fake_plugins"])
    module = types.ModuleType("_fake_plugins")
    calls = []

    def fake_import():  # what importing the module does: it registers its entries
        calls.append(1)
        reg.register("extra", 42)

    monkeypatch.setitem(sys.modules, "_fake_plugins", module)
    monkeypatch.setattr("core.registry.importlib.import_module", lambda name: fake_import())
    assert reg.get("extra") == 42 and reg.names() == ["extra"]
    assert calls == [1]  # once


@pytest.mark.parametrize(
    ("lookup", "kind"),
    [
        ("models.networks.registry:NETWORKS", "network"),
        ("models.losses.registry:LOSSES", "loss"),
        ("datasets.layouts:LAYOUTS", "layout"),
        ("models.optim:OPTIMIZERS", "optimizer"),
        ("models.optim:SCHEDULES", "schedule"),
        ("models.noisy.methods:NOISY_METHODS", "noisy method"),
        ("datasets.superpixels.engine:BACKENDS", "superpixel backend"),
    ],
)
def test_every_kind_uses_the_one_registry_and_is_complete_on_its_own(lookup, kind):
    import importlib

    module, name = lookup.split(":")
    reg = getattr(importlib.import_module(module), name)
    assert isinstance(reg, Registry) and reg.kind == kind and len(reg) >= 1
    with pytest.raises(UnknownNameError, match=f"unknown {kind} 'no-such-thing'.*Valid: "):
        reg.get("no-such-thing")


def test_layouts_defined_outside_layouts_py_need_no_import_side_effect():
    # A fresh interpreter that imports only datasets.layouts sees jsrt and noisy layouts too.
    import subprocess

    code = "from datasets.layouts import LAYOUTS; print(' '.join(LAYOUTS.names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert {"folder", "jsrt", "jsrt_lungs", "noisy"} <= set(out.split())
