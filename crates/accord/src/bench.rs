pub async fn catalogue(_args: crate::cli::BenchCatalogueArgs) -> anyhow::Result<()> {
    anyhow::bail!("todo")
}
