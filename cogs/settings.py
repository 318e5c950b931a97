"""/settings and /prefer: a user's Midjourney habits, kept per user and applied to every prompt.

The /settings panel is ephemeral, but its selects and buttons are DynamicItems keyed only by the
setting's name (the clicking user is whoever sees the panel), so a panel opened before a restart
still works.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _

from bot import preferences as prefs_mod
from bot.errors import InputError
from bot.i18n import t
from bot.preferences import MAX_OPTION_SETS, PANEL_SETTINGS, UserPrefs, check_option_set
from bot.render import CustomId
from bot.responder import locale_of, reply, reply_lines
from cogs._shared import Clickable, Interaction, ItemsCog

if TYPE_CHECKING:
    from bot.bot import MJBot

# The panel's own ids (render.CustomId): keyed only by the setting, so an old panel still works.
SELECT = CustomId("mj:set", (("field", "version|stylize|speed|aspect"),))
TOGGLE = CustomId("mj:tog", (("field", "remix|visibility|reset"),))

_DEFAULT = "default"


def _choices(field: str) -> list[tuple[str, str]]:
    """(value, label) pairs for a select; '' (server default) is shown as 'default'."""
    if field == "version":
        return [
            (v or _DEFAULT, f"v {v}" if v and not v.startswith("niji") else (v or _DEFAULT)) for v in prefs_mod.VERSIONS
        ]
    if field == "stylize":
        return [
            (str(v) if v is not None else _DEFAULT, f"--s {v}" if v is not None else _DEFAULT)
            for v in prefs_mod.STYLIZE_LEVELS
        ]
    if field == "speed":
        return [(v or _DEFAULT, v or _DEFAULT) for v in prefs_mod.SPEEDS]
    return [(v or _DEFAULT, f"--ar {v}" if v else _DEFAULT) for v in prefs_mod.ASPECTS]


def _current(prefs: UserPrefs, field: str) -> str:
    value = getattr(prefs, field)
    return _DEFAULT if value in ("", None) else str(value)


def summary(prefs: UserPrefs, locale: str) -> discord.Embed:
    embed = discord.Embed(title=t("settings.title", locale), color=0x5865F2)
    for field in ("version", "stylize", "speed", "aspect"):
        embed.add_field(name=t(f"settings.{field}", locale), value=_current(prefs, field), inline=True)
    embed.add_field(name=t("settings.remix", locale), value=t("settings.on" if prefs.remix else "settings.off", locale))
    embed.add_field(name=t("settings.visibility", locale), value=t(f"settings.visibility_{prefs.visibility}", locale))
    if prefs.suffix:
        embed.add_field(name=t("settings.suffix", locale), value=prefs.suffix[:1024], inline=False)
    embed.set_footer(text=t("settings.footer", locale))
    return embed


def panel(prefs: UserPrefs, locale: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for row, field in enumerate(("version", "stylize", "speed", "aspect")):
        current = _current(prefs, field)
        options = [
            discord.SelectOption(label=label, value=value, default=value == current) for value, label in _choices(field)
        ]
        view.add_item(
            discord.ui.Select(
                custom_id=SELECT.build(field=field),
                placeholder=t(f"settings.{field}", locale),
                options=options,
                row=row,
            )
        )
    toggles = (
        ("remix", "🎛️", discord.ButtonStyle.success if prefs.remix else discord.ButtonStyle.secondary),
        ("visibility", "📬" if prefs.visibility == "dm" else "💬", discord.ButtonStyle.secondary),
        ("reset", "♻️", discord.ButtonStyle.danger),
    )
    for field, emoji, style in toggles:
        view.add_item(
            discord.ui.Button(
                custom_id=TOGGLE.build(field=field),
                label=t(f"settings.button_{field}", locale),
                emoji=emoji,
                style=style,
                row=4,
            )
        )
    view.stop()  # shown only; the DynamicItems below answer the clicks
    return view


async def show_panel(interaction: Interaction, prefs: UserPrefs, *, edit: bool) -> None:
    locale = locale_of(interaction)
    if edit:
        await interaction.response.edit_message(embed=summary(prefs, locale), view=panel(prefs, locale))
    else:
        await interaction.response.send_message(embed=summary(prefs, locale), view=panel(prefs, locale), ephemeral=True)


class SettingSelect(Clickable, spec=SELECT):
    component = discord.ui.Select

    async def clicked(self, interaction: Interaction) -> None:
        field = self.values["field"]
        data: Mapping[str, object] = interaction.data or {}
        values = data.get("values")
        raw = str(values[0]) if isinstance(values, list) and values else _DEFAULT
        value: object = "" if raw == _DEFAULT else raw
        try:
            if field == "stylize":
                value = None if raw == _DEFAULT else int(raw)
            UserPrefs(interaction.user.id).with_changes(**{field: value})  # a valid choice?
        except ValueError:
            raise InputError("prefs.bad_value", name=field) from None
        # Only this field is written: choices made at the same moment are all kept.
        prefs = await interaction.client.store.update_prefs(interaction.user.id, **{field: value})
        await show_panel(interaction, prefs, edit=True)


class SettingToggle(Clickable, spec=TOGGLE):
    async def clicked(self, interaction: Interaction) -> None:
        field = self.values["field"]
        store = interaction.client.store
        prefs = await store.get_prefs(interaction.user.id)
        if field == "remix":
            changes: dict[str, object] = {"remix": not prefs.remix}
        elif field == "visibility":
            changes = {"visibility": "channel" if prefs.visibility == "dm" else "dm"}
        else:  # reset keeps the suffix and option sets: those are managed with /prefer
            defaults = UserPrefs(prefs.user_id)
            changes = {name: getattr(defaults, name) for name in PANEL_SETTINGS}
        prefs = await store.update_prefs(interaction.user.id, **changes)
        await show_panel(interaction, prefs, edit=True)


class Settings(ItemsCog):
    items = (SettingSelect, SettingToggle)

    @app_commands.command(name=_("settings"), description=_("Your default model, stylize, speed, remix and more"))
    async def settings(self, interaction: Interaction) -> None:
        await show_panel(interaction, await self.bot.store.get_prefs(interaction.user.id), edit=False)

    prefer = app_commands.Group(name=_("prefer"), description=_("Your prompt suffix and option sets"))
    option = app_commands.Group(name=_("option"), description=_("Named option sets"), parent=prefer)

    @prefer.command(name=_("suffix"), description=_("Text added to every prompt (leave empty to remove)"))
    @app_commands.describe(value=_("For example: --style raw --s 150"))
    async def suffix(self, interaction: Interaction, value: app_commands.Range[str, 0, 500] | None = None) -> None:
        locale = locale_of(interaction)
        suffix = UserPrefs(interaction.user.id).with_changes(suffix=" ".join((value or "").split())).suffix
        prefs = await self.bot.store.update_prefs(interaction.user.id, suffix=suffix)
        text = (
            t("prefer.suffix_set", locale, suffix=prefs.suffix) if prefs.suffix else t("prefer.suffix_cleared", locale)
        )
        await reply(interaction, text)

    @option.command(name=_("set"), description=_("Create or change an option set, used as --name in prompts"))
    @app_commands.describe(name=_("The name, used as --name"), value=_("What it expands to, e.g. --ar 21:9 --s 250"))
    async def option_set(
        self, interaction: Interaction, name: app_commands.Range[str, 1, 32], value: app_commands.Range[str, 1, 300]
    ) -> None:
        locale = locale_of(interaction)
        store = self.bot.store
        prefs = await store.get_prefs(interaction.user.id)
        clean, text = check_option_set(name, value, prefs.option_sets)
        # One set written on its own (the limit checked in the same statement): sets added at once are all kept.
        if not await store.set_option_set(interaction.user.id, clean, text, limit=MAX_OPTION_SETS):
            raise InputError("prefs.too_many_options", limit=MAX_OPTION_SETS)
        await reply(interaction, t("prefer.option_saved", locale, name=clean, value=text))

    @option.command(name=_("list"), description=_("Show your option sets"))
    async def option_list(self, interaction: Interaction) -> None:
        locale = locale_of(interaction)
        prefs = await self.bot.store.get_prefs(interaction.user.id)
        if not prefs.option_sets:
            await reply(interaction, t("prefer.no_options", locale))
            return
        lines = [f"`--{name}` → `{value}`" for name, value in sorted(prefs.option_sets.items())]
        await reply_lines(interaction, [t("prefer.options_header", locale), *lines])

    @option.command(name=_("delete"), description=_("Delete an option set"))
    @app_commands.describe(name=_("The option set to delete"))
    async def option_delete(self, interaction: Interaction, name: app_commands.Range[str, 1, 32]) -> None:
        locale = locale_of(interaction)
        clean = name.strip().lstrip("-").lower()
        if not await self.bot.store.delete_option_set(interaction.user.id, clean):
            raise InputError("prefer.no_such_option", name=clean)
        await reply(interaction, t("prefer.option_deleted", locale, name=clean))


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Settings(bot))
