"""The CLI's subcommands: thin parsers that call the stages, plus what only commands show
(the leaderboard and its table, rerun plans, the end-of-sweep summary, output formats)."""
