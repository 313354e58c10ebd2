/* What a CUDA program does first: dlopen the driver's libcuda.so.1 (found through
 * LD_LIBRARY_PATH) and ask it for the devices. Prints where the library came from. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

int main(void)
{
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cuda) {
        printf("no libcuda: %s\n", dlerror());
        return 2;
    }
    int (*init)(unsigned int) = (int (*)(unsigned int))dlsym(cuda, "cuInit");
    int (*count)(int *) = (int (*)(int *))dlsym(cuda, "cuDeviceGetCount");
    int devices = -1;
    Dl_info info;
    if (!init || !count || !dladdr((void *)init, &info))
        return 3;
    printf("cuInit %d\n", init(0));
    count(&devices);
    printf("devices %d\n", devices);
    printf("from %s\n", info.dli_fname);
    return 0;
}
