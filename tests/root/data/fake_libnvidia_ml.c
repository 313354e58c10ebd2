/* A stand-in for the driver's libnvidia-ml.so.1: initialises and names its driver. */
int nvmlInit_v2(void) { return 0; }
const char *shifterFakeDriver(void) { return "fake-driver-1.0"; }
