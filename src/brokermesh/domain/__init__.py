"""The order domain shared by the services that write and read order streams."""
