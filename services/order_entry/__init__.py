"""Order entry: accepts orders and drives them through validation, risk and routing."""
