"""Smart order router: picks a venue by price, fees and venue health."""
