-- The request a task was submitted with (JSON, bot/requests.py), so a retry sends it again.
-- NULL: not stored (requests with pictures) or made before this column. Rows from before it kept a
-- "retry" spec inside `extra`; it becomes the stored request, so Retry buttons already posted in
-- Discord keep working.
ALTER TABLE tasks ADD COLUMN request TEXT;

UPDATE tasks SET request = CASE json_extract(extra, '$.retry.kind')
    WHEN 'imagine' THEN json_object(
        'kind', 'imagine',
        'prompt', json_extract(extra, '$.retry.prompt'),
        'bot_type', coalesce(json_extract(extra, '$.retry.bot_type'), 'MID_JOURNEY'),
        'images', json('[]'))
    WHEN 'shorten' THEN json_object(
        'kind', 'shorten',
        'prompt', json_extract(extra, '$.retry.prompt'),
        'bot_type', coalesce(json_extract(extra, '$.retry.bot_type'), 'MID_JOURNEY'))
    WHEN 'action' THEN json_object(
        'kind', 'action',
        'task_id', parent_id,
        'custom_id', json_extract(extra, '$.retry.custom_id'),
        'enable_remix', json('false'))
    WHEN 'change' THEN json_object(
        'kind', 'change',
        'task_id', parent_id,
        'change', json_extract(extra, '$.retry.action'),
        'index', json_extract(extra, '$.retry.index'))
    WHEN 'video' THEN json_object(
        'kind', 'video',
        'prompt', coalesce(json_extract(extra, '$.retry.prompt'), 'animate'),
        'image', json_extract(extra, '$.retry.image'),
        'motion', coalesce(json_extract(extra, '$.retry.motion'), 'low'),
        'extend_task', CASE WHEN json_extract(extra, '$.retry.index') IS NOT NULL THEN parent_id END,
        'extend_index', json_extract(extra, '$.retry.index'))
    END
WHERE json_valid(extra) AND json_extract(extra, '$.retry.kind') IS NOT NULL;

-- A video made through a relay was marked inside its retry spec: the mark moves to `extra.relay`.
UPDATE tasks SET extra = json_set(extra, '$.relay', json('true'))
WHERE json_valid(extra) AND json_extract(extra, '$.retry.relay') = 1;

UPDATE tasks SET extra = json_remove(extra, '$.retry')
WHERE json_valid(extra) AND json_extract(extra, '$.retry') IS NOT NULL;
