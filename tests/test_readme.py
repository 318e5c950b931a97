"""README.md checked against the code where that is cheap: the settings table against what
bot/config.py reads, the commands it documents against the commands the bot registers (options of
the members' commands included), and the command line against the argument parser.

Helpers adding a setting or a command: the failure message says what to add where."""

from __future__ import annotations

import re
from pathlib import Path

from discord import app_commands

from bot.__main__ import build_parser
from bot.bot import MJBot

ROOT = Path(__file__).resolve().parents[1]
README = ROOT.joinpath("README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    following = README.find("\n## ", start + 1)
    return README[start : following if following != -1 else len(README)]


def settings_read_by_config() -> set[str]:
    return set(re.findall(r"""\(env, "([A-Z][A-Z0-9_]+)\"""", ROOT.joinpath("bot", "config.py").read_text()))


def test_the_settings_table_lists_exactly_the_settings_config_reads() -> None:
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section("Settings"), re.MULTILINE))
    read = settings_read_by_config()
    missing, stale = sorted(read - documented), sorted(documented - read)
    assert not missing, (
        f"README.md's Settings table has no row for {missing}: add `| \\`NAME\\` | default | meaning |` "
        "there (and the setting to .env.example)"
    )
    assert not stale, f"README.md's Settings table documents {stale}, which bot/config.py no longer reads"


def leaf_commands(bot: MJBot) -> list[app_commands.Command]:  # type: ignore[type-arg]
    return [c for c in bot.tree.walk_commands() if isinstance(c, app_commands.Command)]


def mentions(command_path: str) -> bool:
    """`/a b c` in the README, where c may be one of an `x/c/y` list (`/mjadmin key enable/disable`)."""
    *head, leaf = command_path.split()
    prefix = "".join(f"{re.escape(word)} " for word in head)
    return re.search(rf"`/{prefix}(?:[\w-]+/)*{re.escape(leaf)}(?![\w-])", README) is not None


async def test_every_registered_command_is_in_the_readme(bot: MJBot) -> None:
    commands = leaf_commands(bot)
    assert len(commands) >= 10
    missing = [c.qualified_name for c in commands if not mentions(c.qualified_name)]
    assert not missing, (
        f"README.md does not mention {['/' + m for m in missing]}: add a row to the table under "
        "'## Commands' (members' commands) or '## Admin commands', e.g. | `/name option [optional]` | what it does |"
    )


def options_in(cell: str) -> set[str]:
    words: set[str] = set()
    for code in re.findall(r"`([^`]+)`", cell):
        for word in re.findall(r"[\w.]+", code):
            ranged = re.fullmatch(r"([a-z_]+)(\d+)\.\.(\d+)", word)  # image3..5
            if ranged:
                stem, first, last = ranged[1], int(ranged[2]), int(ranged[3])
                words |= {f"{stem}{n}" for n in range(first, last + 1)}
            words.add(word)
    return words


async def test_the_members_commands_table_names_every_option(bot: MJBot) -> None:
    rows = {}
    for line in section("Commands").splitlines():
        if line.startswith("| `/"):
            cell = line.split(" | ")[0]
            for name in re.findall(r"`/([\w ]+?)(?: [\[\w]|`)", cell):
                rows.setdefault(name.split()[0], "")
                rows[name.split()[0]] += cell
    for command in leaf_commands(bot):
        root = command.qualified_name.split()[0]
        if root not in rows:
            continue  # an admin command: its table names the options it wants to
        documented = options_in(rows[root])
        missing = [p.name for p in command.parameters if p.name not in documented]
        assert not missing, (
            f"README.md's Commands table row for /{command.qualified_name} lacks the option(s) {missing}: "
            "write them in its first cell, optional ones in [brackets]"
        )


def test_the_command_line_block_lists_every_subcommand() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[union-attr]
    block = section("Command line")
    missing = [name for name in subcommands if f"mj-bot {name}" not in block and f"[{name}]" not in block]
    assert not missing, f"README.md's Command line section does not show `mj-bot {missing[0]}`"


def test_links_to_sections_and_pages_resolve() -> None:
    anchors = {
        re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in re.findall(r"^#+ (.+)$", README, re.M)
    }
    for target in re.findall(r"\]\(#([^)]+)\)", README):
        assert target in anchors, f"README.md links to #{target}, which no heading makes"
    for page in re.findall(r"\]\((docs/[^)#]+)", README):
        assert ROOT.joinpath(page).is_file(), f"README.md links to {page}, which does not exist"
