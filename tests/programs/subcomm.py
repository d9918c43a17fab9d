"""fe_dist inside an MPI program: world ranks 0 and 1 train the probe on a sub-communicator;
the other world ranks do not take part in training (they only wait at the end)."""

import argparse

from mpi4py import MPI

import probe

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    world = MPI.COMM_WORLD
    train = world.rank < 2
    sub = world.Split(color=0 if train else 1, key=world.rank)
    if train:
        probe.main(out, comm=sub)
    world.Barrier()
