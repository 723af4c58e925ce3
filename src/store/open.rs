//! Choosing the backend from `--db`: a `postgres://` or `postgresql://` URL is PostgreSQL;
//! anything else is the path of a SQLite file (a `sqlite:` prefix is allowed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::postgres::{PgOptions, PgStore, redact_url};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{Store, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    pub fn parse(db: &Path) -> Location {
        let text = db.to_string_lossy();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.into_owned())
        } else if let Some(path) = text.strip_prefix("sqlite:") {
            Location::Sqlite(PathBuf::from(path))
        } else {
            Location::Sqlite(db.to_path_buf())
        }
    }

    /// How to name the database in messages (a URL's password blanked).
    pub fn shown(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(url) => redact_url(url),
        }
    }
}

/// An open store, and what closing it takes.
pub struct Opened {
    pub store: Arc<dyn Store>,
    sqlite: Option<SqliteStore>,
}

impl Opened {
    /// Finishes queued writes and closes connections (SQLite's writer thread); PostgreSQL's
    /// pooled connections close when the store is dropped.
    pub fn close(&self) {
        if let Some(s) = &self.sqlite {
            s.close();
        }
    }
}

pub async fn open(loc: &Location, sqlite: SqliteOptions, pg: PgOptions) -> StoreResult<Opened> {
    match loc {
        Location::Sqlite(path) => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open_with(&path, sqlite))
                .await
                .map_err(|e| crate::store::StoreError::Backend(Box::new(e)))??;
            Ok(Opened {
                store: Arc::new(store.clone()),
                sqlite: Some(store),
            })
        }
        Location::Postgres(url) => {
            let store = PgStore::connect(url, pg).await?;
            Ok(Opened {
                store: Arc::new(store),
                sqlite: None,
            })
        }
    }
}
