"""The procrastinate side of the 3-step chain comparison: each chain is three tasks, each deferring
the next, on the same PostgreSQL. Prints chains per second (time from the first defer until the
worker has drained the queue)."""
import asyncio
import os
import sys
import time

import procrastinate

COUNT = int(os.environ.get("CHAINS", "1000"))
app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["PROCRASTINATE_DSN"]))


@app.task(name="step1")
async def step1(n):
    await step2.defer_async(n=n)


@app.task(name="step2")
async def step2(n):
    await step3.defer_async(n=n)


@app.task(name="step3")
async def step3(n):
    return n


async def main():
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        started = time.perf_counter()
        for i in range(COUNT):
            await step1.defer_async(n=i)
        await app.run_worker_async(concurrency=16, wait=False, install_signal_handlers=False)
        elapsed = time.perf_counter() - started
    print(f"{COUNT / elapsed:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
