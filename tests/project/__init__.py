"""The project around the code: README and docs, the deploy template, locks, release, devtools."""
