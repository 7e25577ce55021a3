"""Support code shared by tests/, bench/ and tools/ (on the path through pytest.ini and the pack
venvs' .pth, see tools/make-venvs): real servers the tests start (sshd, RabbitMQ) and Nova's
wire formats."""
