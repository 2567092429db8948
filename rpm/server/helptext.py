"""What HELP says: the overview and each command's topic, from the command classes."""

from rpm.commands import ALIASES, BY_VERB, COMMANDS


def aliases_of(verb: str) -> list[str]:
    """The aliases that mean verb, in a stable order."""
    return sorted(alias for alias, target in ALIASES.items() if target == verb)


def overview() -> list[str]:
    """HELP without a verb: one line per command, then how to learn more."""
    lines = [f"{command.VERB:<9} {command.HELP.summary}" for command in COMMANDS]
    lines.append("Verbs are case-insensitive. HELP <verb> shows usage, aliases and an example.")
    return lines


def topic(verb: str) -> list[str]:
    """HELP <verb>: usage, summary, details, aliases and an example."""
    usage, summary, details, example = BY_VERB[verb].HELP
    lines = [f"usage: {usage}", summary]
    if details:
        lines.append(details)
    aliases = aliases_of(verb)
    if aliases:
        lines.append("aliases: " + " ".join(aliases))
    lines.append(f"example: {example}")
    return lines
