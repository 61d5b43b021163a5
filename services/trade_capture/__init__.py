"""Trade capture: turns venues'\'' execution reports into fill events."""
