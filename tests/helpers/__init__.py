"""What the tests share: fake and in-process devices, fake e-purses, trace flows, the pcscd
service, back office storages, a child terminal for kill -9 tests, paths."""
