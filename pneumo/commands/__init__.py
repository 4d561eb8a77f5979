"""The CLI's subcommands: thin parsers that call the stages, plus what only commands show
(the leaderboard and its table, its seeds grouped by configuration, rerun plans, the end-of-sweep
summary, output formats)."""
