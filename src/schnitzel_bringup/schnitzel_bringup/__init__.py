"""schnitzel bring-up: graph compiler, launch files, built-in runner, lifecycle manager and the schnitzel CLI."""
