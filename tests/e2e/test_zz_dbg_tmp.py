from tests.e2e.test_faults import *  # noqa

async def test_dbg(bot, discord_fake, mj):
    failed = await imagine(discord_fake, "this one will fail")
    failed_id = newest_task(mj)
    await discord_fake.wait_for(lambda: "did not finish" in failed.text(), timeout=15)
    click = await discord_fake.click(failed, f"mj:act:{failed_id}:0", user=discord_fake.member, force=True)
    cb = await click.response()
    print("CB", cb)
    await asyncio.sleep(0.5)
    print("ORIG", click.original, click.original and click.original.ephemeral, click.original and click.original.text())
    print("FUPS", [(m.ephemeral, m.text()) for m in click.followups])
