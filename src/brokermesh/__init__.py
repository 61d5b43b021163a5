"""brokermesh: an open trading platform for broker-dealers and wealth managers."""
