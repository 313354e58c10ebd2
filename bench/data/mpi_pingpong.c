/* Ranks 0 and 1 of MPI_COMM_WORLD: one-way ping-pong latency for 8 B and 1 MiB messages
 * and the time of a 1 MiB (double) allreduce over all ranks, each the median of many
 * repetitions, in microseconds, printed by rank 0 as "NAME VALUE" lines. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#define WARMUP 20

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int count)
{
    qsort(values, count, sizeof *values, compare);
    return values[count / 2];
}

static double pingpong(int rank, char *buffer, int size, int reps, double *times)
{
    for (int i = -WARMUP; i < reps; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double start = MPI_Wtime();
        if (rank == 0) {
            MPI_Send(buffer, size, MPI_CHAR, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(buffer, size, MPI_CHAR, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == 1) {
            MPI_Recv(buffer, size, MPI_CHAR, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buffer, size, MPI_CHAR, 0, 0, MPI_COMM_WORLD);
        }
        if (i >= 0)
            times[i] = (MPI_Wtime() - start) / 2 * 1e6;
    }
    return median(times, reps);
}

int main(int argc, char **argv)
{
    int rank, reps = 2000, big = 1 << 20;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char *buffer = calloc(big, 1);
    double *in = calloc(big / sizeof(double), sizeof(double));
    double *out = calloc(big / sizeof(double), sizeof(double));
    double *times = calloc(reps, sizeof(double));
    double small = pingpong(rank, buffer, 8, reps, times);
    double large = pingpong(rank, buffer, big, reps / 10, times);
    for (int i = -WARMUP; i < reps / 10; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double start = MPI_Wtime();
        MPI_Allreduce(in, out, big / sizeof(double), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (i >= 0)
            times[i] = (MPI_Wtime() - start) * 1e6;
    }
    double reduce = median(times, reps / 10);
    if (rank == 0)
        printf("pingpong_8B %.3f\npingpong_1MiB %.3f\nallreduce_1MiB %.3f\n", small, large, reduce);
    MPI_Finalize();
    return 0;
}
