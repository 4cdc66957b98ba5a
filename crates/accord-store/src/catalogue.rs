//! Members, subsystems and services: writes inside a [`Tx`], reads and the
//! filtered, paged catalogue search.

use accord_domain::{
    Country, Level, Member, MemberId, Sector, Service, ServiceId, Subsystem, SubsystemId,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{conflict_on_unique, Result, Store, StoreError, Tx};

/// A member to add; validated by the caller.
#[derive(Debug, Clone)]
pub struct NewMember {
    pub id: MemberId,
    pub name: String,
    pub level: Level,
    pub country: Country,
    pub sector: Sector,
    pub parent: Option<MemberId>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
}

/// A subsystem to add.
#[derive(Debug, Clone)]
pub struct NewSubsystem {
    pub id: SubsystemId,
    pub name: String,
}

/// A service to add, with its OpenAPI document.
#[derive(Debug, Clone)]
pub struct NewService {
    pub id: ServiceId,
    pub title: String,
    pub description: String,
    pub personal_data: bool,
    pub data_categories: Vec<String>,
    pub openapi_version: String,
    pub openapi_document: String,
}

/// A service's stored OpenAPI document.
#[derive(Debug, Clone)]
pub struct ServiceDocument {
    pub id: ServiceId,
    pub document: String,
}

/// Which part of the catalogue to return. Every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct CatalogueFilter {
    pub level: Option<Level>,
    pub country: Option<Country>,
    pub sector: Option<Sector>,
    /// Case-insensitive substring of names, titles, descriptions and ids.
    pub text: Option<String>,
    /// Only this member's entries (and, for members, its own record).
    pub member: Option<MemberId>,
    /// Services only: whether they process personal data.
    pub personal_data: Option<bool>,
}

/// A page request: 1-based page number and page size.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub number: u32,
    pub size: u32,
}

/// One page of results and the total over all pages.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: u32,
    pub per_page: u32,
}

impl Page {
    fn offset(&self) -> i64 {
        i64::from(self.number.saturating_sub(1)) * i64::from(self.size)
    }
}

/// Lower-cases text for `search_text` columns and search patterns.
fn fold(text: &str) -> String {
    text.to_lowercase()
}

fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in fold(text).chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn member_from_row(row: &AnyRow) -> Result<Member> {
    let id: String = row.try_get("id")?;
    let parent: Option<String> = row.try_get("parent_id")?;
    let level: String = row.try_get("level")?;
    let country: String = row.try_get("country")?;
    let sector: String = row.try_get("sector")?;
    Ok(Member {
        id: id.parse().map_err(|e| corrupt("member id", e))?,
        name: row.try_get("name")?,
        level: level.parse().map_err(|e| corrupt("member level", e))?,
        country: country.parse().map_err(|e| corrupt("member country", e))?,
        sector: sector.parse().map_err(|e| corrupt("member sector", e))?,
        parent: parent
            .map(|p| p.parse())
            .transpose()
            .map_err(|e| corrupt("member parent", e))?,
        contact_name: row.try_get("contact_name")?,
        contact_email: row.try_get("contact_email")?,
        created_at: row.try_get("created_at")?,
    })
}

fn subsystem_from_row(row: &AnyRow) -> Result<Subsystem> {
    let id: String = row.try_get("id")?;
    Ok(Subsystem {
        id: id.parse().map_err(|e| corrupt("subsystem id", e))?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn service_from_row(row: &AnyRow) -> Result<Service> {
    let id: String = row.try_get("id")?;
    let categories: String = row.try_get("data_categories")?;
    let personal: i64 = row.try_get("personal_data")?;
    Ok(Service {
        id: id.parse().map_err(|e| corrupt("service id", e))?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        personal_data: personal != 0,
        data_categories: serde_json::from_str(&categories)
            .map_err(|e| corrupt("service data categories", e))?,
        openapi_version: row.try_get("openapi_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const MEMBER_COLUMNS: &str = "m.id, m.name, m.level, m.country, m.sector, m.parent_id, \
     m.contact_name, m.contact_email, m.created_at";
const SERVICE_COLUMNS: &str = "s.id, s.title, s.description, s.personal_data, \
     s.data_categories, s.openapi_version, s.created_at, s.updated_at";

/// Reads used both inside and outside transactions.
pub(crate) async fn member(conn: &mut AnyConnection, id: &MemberId) -> Result<Option<Member>> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM members m WHERE m.id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(member_from_row).transpose()
}

async fn subsystem(conn: &mut AnyConnection, id: &SubsystemId) -> Result<Option<Subsystem>> {
    let row = sqlx::query("SELECT id, name, created_at FROM subsystems WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(subsystem_from_row).transpose()
}

async fn service(conn: &mut AnyConnection, id: &ServiceId) -> Result<Option<Service>> {
    let sql = format!("SELECT {SERVICE_COLUMNS} FROM services s WHERE s.id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(service_from_row).transpose()
}

impl Tx {
    pub async fn member(&mut self, id: &MemberId) -> Result<Option<Member>> {
        member(self.conn(), id).await
    }

    pub async fn subsystem(&mut self, id: &SubsystemId) -> Result<Option<Subsystem>> {
        subsystem(self.conn(), id).await
    }

    pub async fn service(&mut self, id: &ServiceId) -> Result<Option<Service>> {
        service(self.conn(), id).await
    }

    pub async fn insert_member(&mut self, m: &NewMember, at: &str) -> Result<()> {
        let search = fold(&format!("{} {} {}", m.name, m.id, m.country.name()));
        sqlx::query(
            "INSERT INTO members (id, instance, class, code, name, level, country, sector, \
             parent_id, contact_name, contact_email, search_text, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(m.id.to_string())
        .bind(m.id.instance().to_owned())
        .bind(m.id.class().to_owned())
        .bind(m.id.code().to_owned())
        .bind(m.name.clone())
        .bind(m.level.as_str())
        .bind(m.country.as_str().to_owned())
        .bind(m.sector.as_str())
        .bind(m.parent.as_ref().map(|p| p.to_string()))
        .bind(m.contact_name.clone())
        .bind(m.contact_email.clone())
        .bind(search)
        .bind(at.to_owned())
        .execute(self.conn())
        .await
        .map_err(conflict_on_unique(|| format!("member {}", m.id)))?;
        Ok(())
    }

    pub async fn insert_subsystem(&mut self, s: &NewSubsystem, at: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO subsystems (id, member_id, code, name, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(s.id.to_string())
        .bind(s.id.member().to_string())
        .bind(s.id.code().to_owned())
        .bind(s.name.clone())
        .bind(at.to_owned())
        .execute(self.conn())
        .await
        .map_err(conflict_on_unique(|| format!("subsystem {}", s.id)))?;
        Ok(())
    }

    pub async fn insert_service(&mut self, s: &NewService, at: &str) -> Result<()> {
        let categories = serde_json::to_string(&s.data_categories)
            .map_err(|e| corrupt("service data categories", e))?;
        let search = fold(&format!(
            "{} {} {} {}",
            s.title,
            s.id,
            s.data_categories.join(" "),
            s.description
        ));
        let inserted = sqlx::query(
            "INSERT INTO services (id, subsystem_id, member_id, code, version, title, \
             description, personal_data, data_categories, openapi_version, level, country, sector, \
             search_text, created_at, updated_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, m.level, m.country, m.sector, $11, $12, $12 \
             FROM members m WHERE m.id = $3",
        )
        .bind(s.id.to_string())
        .bind(s.id.subsystem().to_string())
        .bind(s.id.member().to_string())
        .bind(s.id.code().to_owned())
        .bind(s.id.version().map(str::to_owned))
        .bind(s.title.clone())
        .bind(s.description.clone())
        .bind(i64::from(s.personal_data))
        .bind(categories)
        .bind(s.openapi_version.clone())
        .bind(search)
        .bind(at.to_owned())
        .execute(self.conn())
        .await
        .map_err(conflict_on_unique(|| format!("service {}", s.id)))?;
        if inserted.rows_affected() != 1 {
            return Err(StoreError::Missing(format!("member {}", s.id.member())));
        }
        sqlx::query("INSERT INTO service_documents (service_id, document) VALUES ($1, $2)")
            .bind(s.id.to_string())
            .bind(s.openapi_document.clone())
            .execute(self.conn())
            .await
            .map_err(conflict_on_unique(|| {
                format!("the document of service {}", s.id)
            }))?;
        Ok(())
    }
}

impl Store {
    pub async fn member(&self, id: &MemberId) -> Result<Option<Member>> {
        member(&mut *self.read().await?, id).await
    }

    pub async fn subsystem(&self, id: &SubsystemId) -> Result<Option<Subsystem>> {
        subsystem(&mut *self.read().await?, id).await
    }

    pub async fn service(&self, id: &ServiceId) -> Result<Option<Service>> {
        service(&mut *self.read().await?, id).await
    }

    pub async fn subsystems_of(&self, member: &MemberId) -> Result<Vec<Subsystem>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at FROM subsystems WHERE member_id = $1 ORDER BY id",
        )
        .bind(member.to_string())
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(subsystem_from_row).collect()
    }

    pub async fn service_document(&self, id: &ServiceId) -> Result<Option<ServiceDocument>> {
        let row = sqlx::query("SELECT document FROM service_documents WHERE service_id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *self.read().await?)
            .await?;
        match row {
            Some(row) => Ok(Some(ServiceDocument {
                id: id.clone(),
                document: row.try_get("document")?,
            })),
            None => Ok(None),
        }
    }

    /// Members matching `filter`, ordered by id.
    pub async fn search_members(
        &self,
        filter: &CatalogueFilter,
        page: Page,
    ) -> Result<Paged<Member>> {
        let mut query = Where::default();
        query.member_filters(filter, "m");
        if let Some(member) = &filter.member {
            query.push("m.id = ", member.to_string());
        }
        if let Some(text) = &filter.text {
            query.like("m.search_text", text);
        }
        let from = format!("FROM members m{}", query.sql());
        let select = format!(
            "SELECT {MEMBER_COLUMNS} {from} ORDER BY m.id LIMIT {} OFFSET {}",
            page.size,
            page.offset()
        );
        self.paged(&query, &from, &select, page, member_from_row)
            .await
    }

    /// Services matching `filter` (level, country and sector are the
    /// providing member's, copied onto each service), ordered by id.
    pub async fn search_services(
        &self,
        filter: &CatalogueFilter,
        page: Page,
    ) -> Result<Paged<Service>> {
        let mut query = Where::default();
        query.member_filters(filter, "s");
        if let Some(member) = &filter.member {
            query.push("s.member_id = ", member.to_string());
        }
        if let Some(personal) = filter.personal_data {
            query.push("s.personal_data = ", i64::from(personal));
        }
        if let Some(text) = &filter.text {
            query.like("s.search_text", text);
        }
        let from = format!("FROM services s{}", query.sql());
        let select = format!(
            "SELECT {SERVICE_COLUMNS} {from} ORDER BY s.id LIMIT {} OFFSET {}",
            page.size,
            page.offset()
        );
        self.paged(&query, &from, &select, page, service_from_row)
            .await
    }

    async fn paged<T>(
        &self,
        query: &Where,
        from: &str,
        select: &str,
        page: Page,
        decode: fn(&AnyRow) -> Result<T>,
    ) -> Result<Paged<T>> {
        let mut conn = self.read().await?;
        let count_sql = format!("SELECT COUNT(*) AS n {from}");
        let total: i64 = query
            .bind(sqlx::query(&count_sql))
            .fetch_one(&mut *conn)
            .await?
            .try_get("n")?;
        let rows = query
            .bind(sqlx::query(select))
            .fetch_all(&mut *conn)
            .await?;
        Ok(Paged {
            items: rows.iter().map(decode).collect::<Result<_>>()?,
            total,
            page: page.number,
            per_page: page.size,
        })
    }

    /// Number of members, subsystems and services, for summaries.
    pub async fn counts(&self) -> Result<(i64, i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM members) AS m, (SELECT COUNT(*) FROM subsystems) AS ss, \
             (SELECT COUNT(*) FROM services) AS s",
        )
        .fetch_one(&mut *self.read().await?)
        .await?;
        Ok((row.try_get("m")?, row.try_get("ss")?, row.try_get("s")?))
    }
}

/// A value bound to a WHERE clause.
enum Arg {
    Text(String),
    Int(i64),
}

impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Text(s)
    }
}

impl From<i64> for Arg {
    fn from(i: i64) -> Arg {
        Arg::Int(i)
    }
}

/// A WHERE clause built from optional filters, with `$n` placeholders.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    fn push(&mut self, clause: &str, arg: impl Into<Arg>) {
        self.args.push(arg.into());
        self.clauses.push(format!("{clause}${}", self.args.len()));
    }

    fn like(&mut self, column: &str, text: &str) {
        self.args.push(Arg::Text(like_pattern(text)));
        self.clauses
            .push(format!("{column} LIKE ${} ESCAPE '\\'", self.args.len()));
    }

    fn member_filters(&mut self, filter: &CatalogueFilter, alias: &str) {
        if let Some(level) = filter.level {
            self.push(&format!("{alias}.level = "), level.as_str().to_owned());
        }
        if let Some(country) = &filter.country {
            self.push(&format!("{alias}.country = "), country.as_str().to_owned());
        }
        if let Some(sector) = filter.sector {
            self.push(&format!("{alias}.sector = "), sector.as_str().to_owned());
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    fn bind<'q>(
        &'q self,
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for arg in &self.args {
            query = match arg {
                Arg::Text(s) => query.bind(s.as_str()),
                Arg::Int(i) => query.bind(*i),
            };
        }
        query
    }
}

impl Store {
    /// Every member, ordered by id (for the federation configuration).
    pub async fn all_members(&self) -> Result<Vec<Member>> {
        let sql = format!("SELECT {MEMBER_COLUMNS} FROM members m ORDER BY m.id");
        let rows = sqlx::query(&sql)
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter().map(member_from_row).collect()
    }

    /// Every subsystem id, ordered.
    pub async fn all_subsystem_ids(&self) -> Result<Vec<SubsystemId>> {
        let rows = sqlx::query("SELECT id FROM subsystems ORDER BY id")
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                id.parse().map_err(|e| corrupt("subsystem id", e))
            })
            .collect()
    }

    /// Every service id with whether it processes personal data, ordered.
    pub async fn all_service_ids(&self) -> Result<Vec<(ServiceId, bool)>> {
        let rows = sqlx::query("SELECT id, personal_data FROM services ORDER BY id")
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let personal: i64 = r.try_get("personal_data")?;
                Ok((
                    id.parse().map_err(|e| corrupt("service id", e))?,
                    personal != 0,
                ))
            })
            .collect()
    }
}
