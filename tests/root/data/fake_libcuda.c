/* A stand-in for the NVIDIA driver's libcuda.so.1 (no GPU here): cuInit succeeds and
 * cuDeviceGetCount counts the /dev/nvidia<N> nodes the calling process can see, so a
 * program in a container reports the GPUs shifter gave it. */
#include <dirent.h>
#include <string.h>

int cuInit(unsigned int flags)
{
    (void)flags;
    return 0;
}

int cuDeviceGetCount(int *count)
{
    DIR *dev = opendir("/dev");
    struct dirent *entry;
    int found = 0;
    while (dev && (entry = readdir(dev)))
        if (!strncmp(entry->d_name, "nvidia", 6) && entry->d_name[6] >= '0' && entry->d_name[6] <= '9')
            found++;
    if (dev)
        closedir(dev);
    *count = found;
    return 0;
}
