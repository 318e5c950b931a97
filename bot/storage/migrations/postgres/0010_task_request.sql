-- PostgreSQL twin of ../0010_task_request.sql: the request a task was submitted with (JSON text),
-- and the old "retry" specs inside `extra` turned into it.
ALTER TABLE tasks ADD COLUMN request TEXT;

UPDATE tasks SET request = CASE (extra::jsonb -> 'retry' ->> 'kind')
    WHEN 'imagine' THEN jsonb_build_object(
        'kind', 'imagine',
        'prompt', extra::jsonb -> 'retry' -> 'prompt',
        'bot_type', coalesce(extra::jsonb -> 'retry' -> 'bot_type', '"MID_JOURNEY"'::jsonb),
        'images', '[]'::jsonb)::text
    WHEN 'shorten' THEN jsonb_build_object(
        'kind', 'shorten',
        'prompt', extra::jsonb -> 'retry' -> 'prompt',
        'bot_type', coalesce(extra::jsonb -> 'retry' -> 'bot_type', '"MID_JOURNEY"'::jsonb))::text
    WHEN 'action' THEN jsonb_build_object(
        'kind', 'action',
        'task_id', parent_id,
        'custom_id', extra::jsonb -> 'retry' -> 'custom_id',
        'enable_remix', false)::text
    WHEN 'change' THEN jsonb_build_object(
        'kind', 'change',
        'task_id', parent_id,
        'change', extra::jsonb -> 'retry' -> 'action',
        'index', extra::jsonb -> 'retry' -> 'index')::text
    WHEN 'video' THEN jsonb_build_object(
        'kind', 'video',
        'prompt', coalesce(extra::jsonb -> 'retry' -> 'prompt', '"animate"'::jsonb),
        'image', extra::jsonb -> 'retry' -> 'image',
        'motion', coalesce(extra::jsonb -> 'retry' -> 'motion', '"low"'::jsonb),
        'extend_task', CASE WHEN extra::jsonb -> 'retry' ? 'index' THEN parent_id END,
        'extend_index', extra::jsonb -> 'retry' -> 'index')::text
    END
WHERE extra::jsonb ? 'retry';

-- A video made through a relay was marked inside its retry spec: the mark moves to `extra.relay`.
UPDATE tasks SET extra = jsonb_set(extra::jsonb, '{relay}', 'true'::jsonb)::text
WHERE extra::jsonb -> 'retry' ->> 'relay' = 'true';

UPDATE tasks SET extra = (extra::jsonb - 'retry')::text WHERE extra::jsonb ? 'retry';
