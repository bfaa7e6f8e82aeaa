"""Static validation of schnitzel graphs: checks, error model and the validate command."""
