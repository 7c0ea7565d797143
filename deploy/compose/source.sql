-- Seed of the compose demo's source database (run once, by the postgres
-- image's entrypoint, when the data volume is new).
CREATE TABLE public.customers (
  id         bigint PRIMARY KEY,
  name       text NOT NULL,
  email      text,
  created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO public.customers (id, name, email, created_at)
SELECT g,
       (ARRAY['Ada','Zoë','Björn','Łucja','李雷','Amélie'])[1 + g % 6] || ' #' || g,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'customer' || g || '@example.com' END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'
FROM generate_series(1, 10000) g;
