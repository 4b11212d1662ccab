"""Product analytics: sessions, funnels, retention and paths over the hot tier or the lake."""
