"""The pool work both exporter tests run in a subprocess, around their own setup.

Pool "browser" refuses twice, pool "mcp" would refuse once in dry-run; pool
"spare" is made before the exporter starts (as with gunicorn's preload_app)
and never used.
"""

_POOLS = """
import asyncio, contextlib
from memwarden.hold.pool import Pool, PoolTimeout

async def create():
    return object()

async def close(resource):
    pass

async def refuse(name, mode):
    pool = Pool(create, close, max_size=1, acquire_timeout=0, name=name, mode=mode)
    async with pool.acquire():
        with contextlib.suppress(PoolTimeout):
            async with pool.acquire():
                pass
    await pool.close()
"""


def pool_refusals_script(setup: str, *, start: str = "", end: str = "") -> str:
    """``setup`` runs before pool "spare" is made, ``start`` after it, ``end`` last."""
    return (f"{_POOLS}\n{setup}\n"
            'spare = Pool(create, close, max_size=1, acquire_timeout=0, name="spare")\n'
            f"{start}\n"
            'for name, mode in (("browser", "on"), ("browser", "on"), ("mcp", "dry-run")):\n'
            "    asyncio.run(refuse(name, mode))\n"
            f"{end}\n")
