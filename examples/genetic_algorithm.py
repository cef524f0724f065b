"""A genetic algorithm: evolve bit strings towards all ones (the "OneMax" problem).

After PyMW's genetic algorithm example. The master keeps the population and breeds
it (tournament selection, one-point crossover, mutation, the best kept as they are);
the workers evaluate every individual's fitness, one task each, through
``master.map``::

    python examples/genetic_algorithm.py
    python examples/genetic_algorithm.py --population 100 --genes 200 --generations 300
"""

from __future__ import annotations

import random
import sys
import time

from common import open_master, parser


def fitness(genes: list[int]) -> int:
    """How many bits are set: the quantity the algorithm maximises."""
    return sum(genes)


def tournament(rng: random.Random, population: list, scores: list[int], size: int = 3) -> list:
    """The fittest of ``size`` individuals picked at random."""
    picks = [rng.randrange(len(population)) for _ in range(size)]
    return population[max(picks, key=lambda i: scores[i])]


def breed(rng: random.Random, mother: list[int], father: list[int],
          crossover: float, mutation: float) -> list[int]:
    """One child: one-point crossover (with probability ``crossover``), then bit flips."""
    if rng.random() < crossover:
        cut = rng.randrange(1, len(mother))
        child = mother[:cut] + father[cut:]
    else:
        child = list(mother)
    return [1 - bit if rng.random() < mutation else bit for bit in child]


def main(argv: list[str] | None = None) -> int:
    args_parser = parser("Evolve bit strings towards all ones; workers score each individual.")
    args_parser.add_argument("--population", type=int, default=40, help="individuals (default: 40)")
    args_parser.add_argument("--genes", type=int, default=40, help="bits each (default: 40)")
    args_parser.add_argument("--generations", type=int, default=60,
                             help="most generations to run (default: 60)")
    args_parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    args = args_parser.parse_args(argv)
    if args.population < 4 or args.genes < 2 or args.generations < 1:
        args_parser.error("need --population >= 4, --genes >= 2, --generations >= 1")

    rng = random.Random(args.seed)
    crossover, mutation, elite = 0.7, 1.0 / args.genes, 2
    population = [[rng.randint(0, 1) for _ in range(args.genes)] for _ in range(args.population)]
    started = time.perf_counter()
    with open_master(args) as master:
        for generation in range(1, args.generations + 1):
            scores = list(master.map(fitness, population))
            best = max(scores)
            if generation == 1 or generation % 10 == 0 or best == args.genes:
                print(f"generation {generation:3}: best {best}/{args.genes}, "
                      f"average {sum(scores) / len(scores):.1f}")
            if best == args.genes:
                break
            ranked = sorted(range(len(population)), key=lambda i: -scores[i])
            children = [population[i] for i in ranked[:elite]]
            while len(children) < len(population):
                children.append(breed(rng, tournament(rng, population, scores),
                                      tournament(rng, population, scores), crossover, mutation))
            population = children
        name = master.interface_name
    elapsed = time.perf_counter() - started

    print(f"best individual: {best}/{args.genes} bits set after {generation} generations")
    print(f"{generation * len(population)} fitness tasks on the {name!r} interface, "
          f"{elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
