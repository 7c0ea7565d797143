-- The compose demo's target: the same table, empty; ferry fills it.
CREATE TABLE public.customers (
  id         bigint PRIMARY KEY,
  name       text NOT NULL,
  email      text,
  created_at timestamptz NOT NULL DEFAULT now()
);
