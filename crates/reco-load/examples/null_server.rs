//! A do-nothing server of the seed contract, for measuring the load generator's own ceiling:
//! it answers like the seed's Python reference (fake data, `article_num` articles) at Rust speed.
//!
//! `cargo run --release -p reco-load --example null_server -- 127.0.0.1:8899`

use reco_proto::seed::{
    Article, ArticleResponse, Track, UserRequest,
    user_recommend_server::{UserRecommend, UserRecommendServer},
};
use tonic::{Request, Response, Status, transport::Server};

struct Fake;

#[tonic::async_trait]
impl UserRecommend for Fake {
    async fn user_recommend(&self, request: Request<UserRequest>) -> Result<Response<ArticleResponse>, Status> {
        let req = request.into_inner();
        let recommends = (1..=i64::from(req.article_num.clamp(0, 1000)))
            .map(|i| Article {
                article_id: i,
                track: Some(Track {
                    click: format!("click param {i}"),
                    collect: format!("collect param {i}"),
                    share: format!("share param {i}"),
                    read: format!("read param {i}"),
                }),
            })
            .collect();
        Ok(Response::new(ArticleResponse { exposure: "exposure param".into(), time_stamp: 0, recommends }))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8899".into()).parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(Server::builder().add_service(UserRecommendServer::new(Fake)).serve(addr))?;
    Ok(())
}
